"""The protocol's steps as library calls with typed inputs and outputs: plant -> locate -> treat (measures) -> revive.

    planted = plant(run, task)
    located = locate(run, planted)
    treated = treat(run, planted, located)
    revived = revive_all(run, planted, treated)
"""
