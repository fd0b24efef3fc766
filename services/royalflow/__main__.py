from royalflow.cli import main

main()
