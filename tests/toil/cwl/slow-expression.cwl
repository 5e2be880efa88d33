#!/usr/bin/env cwl-runner
# An ExpressionTool that computes for about 5 s under a 3 s ToolTimeLimit. CWL says a time limit
# does not apply to an ExpressionTool, so it must not be stopped.
cwlVersion: v1.2
class: ExpressionTool
requirements:
  InlineJavascriptRequirement: {}
  ToolTimeLimit:
    timelimit: 3
inputs: []
outputs:
  status: string
expression: |
  ${
    var until = Date.now() + 5000;
    while (Date.now() < until) {}
    return {"status": "Done"};
  }
