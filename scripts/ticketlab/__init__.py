"""ticketlab: sparse-network training papers, reproduced."""
