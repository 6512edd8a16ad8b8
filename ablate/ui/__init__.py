"""Terminal output every `ablate` command shares: errors (`console.fail`), progress bars
(`progress`), the end-of-run summary (`summary`)."""
