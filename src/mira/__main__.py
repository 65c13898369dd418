from mira.cli import main

main()
