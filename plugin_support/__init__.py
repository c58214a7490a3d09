"""What the tap and the target share as Singer plugins: secret-safe config errors, a clean exit."""
