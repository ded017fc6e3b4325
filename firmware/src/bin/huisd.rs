fn main() {
    std::process::exit(huis_firmware::daemon::main());
}
