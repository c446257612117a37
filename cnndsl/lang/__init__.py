"""The language front end: the grammar's parser and the syntax tree (AST)."""
