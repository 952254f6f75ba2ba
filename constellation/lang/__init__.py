"""constellation-lang: the parser, printer, type checker and compiler of ``.cst`` pipelines."""
