from tfaudit.cli import main

raise SystemExit(main())
