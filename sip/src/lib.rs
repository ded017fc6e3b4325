//! Sans-IO SIP core (see ARCHITECTURE.md).
