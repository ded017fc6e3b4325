//! Room audio DSP (see ARCHITECTURE.md).
