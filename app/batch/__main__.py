"""`python -m app.batch CAMPAIGN` (one worker; what `--processes` and `accelerate launch -m app.batch` start)."""

from .runner import main

main()
