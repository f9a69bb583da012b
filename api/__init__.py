"""HTTP and composition root: app factory, settings, auth, errors, routes, migrations, CLI."""
