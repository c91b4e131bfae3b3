//! Placeholder: the Railway GraphQL client.
