module gomaps

go 1.19
