//! In-memory Sprites API and simulated OpenClaw gateways. See README.md.
