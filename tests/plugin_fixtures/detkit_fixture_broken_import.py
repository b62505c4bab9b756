"""A plugin that cannot be imported: it needs a package that is not installed."""

import detkit_fixture_missing_dependency  # noqa: F401
