"""``hf-tasks demo``: the whole flow for each task (``run``), publishing (``publish``), the report (``report``) and
the load-back prediction in a fresh process (``predict``); ``jobs`` holds what they share. Nothing here knows a task:
the built-in jobs, predictions, truths, pictures and headline numbers come from each task's spec (``TaskSpec.demo``,
``TaskSpec.headline``)."""
