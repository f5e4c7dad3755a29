"""``hf-tasks demo``: the whole flow for each task (``run``), publishing (``publish``), the report (``report``) and
the load-back prediction in a fresh process (``predict``). Per-task parts come from each task's spec."""
