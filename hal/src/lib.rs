//! Hardware abstraction layer (filled in by the foundation work).
