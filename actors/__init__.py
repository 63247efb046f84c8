"""The four Ray actor kinds. Each is a plain class (unit-testable as an object) made a
Ray actor in one place, `actors.remote`. They orchestrate; the math lives in
`modelmon_daemon`."""
