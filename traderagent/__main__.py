from traderagent.cli import main

raise SystemExit(main())
