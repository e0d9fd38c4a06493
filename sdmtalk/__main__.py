from sdmtalk.cli import main

raise SystemExit(main())
