"""How the CLI draws what it prints: times and spans as people read them
(:mod:`.times`), the ``-o`` formats and plain or coloured tables
(:mod:`.output`, drawn on a terminal by :mod:`.tables`), the rows of ``ps``
and ``workers`` (:mod:`.jobs`), ``describe``'s view of a job
(:mod:`.describe`) and a workflow's steps as a tree (:mod:`.flow`,
imported only by the commands that draw one)."""
