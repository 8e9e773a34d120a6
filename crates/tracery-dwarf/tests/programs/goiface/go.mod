module goiface

go 1.19
