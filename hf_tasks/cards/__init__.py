"""Model cards: generic rendering (model-index, tables, framework versions); a task's parts come from its spec."""
