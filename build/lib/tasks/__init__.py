"""Domain logic of Fingerspell: plain typed functions, each module one stage."""
