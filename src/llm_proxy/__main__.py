"""python -m llm_proxy -> the CLI."""

from llm_proxy.cli import main

main()
