module example.com/wordcount-service

go 1.19
