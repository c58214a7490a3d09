"""tap-braze-currents: Braze Currents Avro exports as Singer streams, one per event type."""
