from modelmon_daemon.cli import main

raise SystemExit(main())
