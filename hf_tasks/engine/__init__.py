"""The one accelerate loop and what it needs: checkpoints, optimizer and schedules, preemption, the Accelerator.

The engine knows no task, no card and no Hub: it runs whatever ``TaskSpec`` it is given and returns the results.
"""
