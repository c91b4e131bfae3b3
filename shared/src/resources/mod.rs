//! Per-instance resources: an OpenRouter key and an AgentMail inbox (convos-contracts §4).
