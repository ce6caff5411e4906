from saescale.cli import main

main()
