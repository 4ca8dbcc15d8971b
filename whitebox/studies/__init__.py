"""Studies beyond the core protocol: grokking's progress measures and early warning, the flawed rater's deception measures, the detection benchmark."""
