module isolapeer

go 1.19
