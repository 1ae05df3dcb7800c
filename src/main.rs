fn main() {
    eprintln!("tdsscope: under construction");
    std::process::exit(2);
}
