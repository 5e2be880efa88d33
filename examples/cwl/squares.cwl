#!/usr/bin/env cwl-runner
# A scatter: one CommandLineTool job per number, each writing its square.
cwlVersion: v1.2
class: Workflow
requirements:
  ScatterFeatureRequirement: {}
inputs:
  numbers: int[]
outputs:
  squares:
    type: int[]
    outputSource: square/squared
steps:
  square:
    run:
      class: CommandLineTool
      inputs:
        number:
          type: int
          inputBinding: {position: 1}
      baseCommand: [sh, -c, 'echo $(($0 * $0))']
      stdout: out.txt
      outputs:
        squared:
          type: int
          outputBinding:
            glob: out.txt
            loadContents: true
            outputEval: $(parseInt(self[0].contents))
      requirements:
        InlineJavascriptRequirement: {}
    scatter: number
    in:
      number: numbers
    out: [squared]
