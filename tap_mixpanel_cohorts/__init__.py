"""tap-mixpanel-cohorts: Mixpanel cohort membership, and its changes since the last sync."""
