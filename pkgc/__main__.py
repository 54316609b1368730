from pkgc.cli import main

main()
