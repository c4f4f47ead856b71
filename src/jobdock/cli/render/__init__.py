"""How the CLI draws what it prints: times and spans as people read them
(:mod:`.times`), borderless tables (:mod:`.tables`) and a workflow's steps as
a tree (:mod:`.flow`, imported only by the commands that draw one)."""
