"""target-mixpanel: Singer records into Mixpanel's Import API, every record accounted for."""
