#!/usr/bin/env cwl-runner
# A CommandLineTool that sleeps past its 3 s ToolTimeLimit, and so must fail.
cwlVersion: v1.2
class: CommandLineTool
requirements:
  ToolTimeLimit:
    timelimit: 3
baseCommand: [sleep, "30"]
inputs: []
outputs: []
