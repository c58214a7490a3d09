"""mixpanel-cohort-receiver: stores Mixpanel's cohort webhook messages for tap-mixpanel-cohorts."""
