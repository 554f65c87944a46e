module otelhardening/bench/upstream

go 1.22
