use rayai::agent;

#[agent]
#[derive(Default)]
pub struct WebSearch;
