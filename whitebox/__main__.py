from whitebox.cli.main import main

raise SystemExit(main())
