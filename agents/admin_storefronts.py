"""Admin registrations for this area (imported by agents.admin)."""
