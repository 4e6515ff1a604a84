from mediation.cli import main

raise SystemExit(main())
