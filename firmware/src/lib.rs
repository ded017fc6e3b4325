//! huis firmware library: the pieces of huisd and huisctl.
