from click2call.cli import main

raise SystemExit(main())
