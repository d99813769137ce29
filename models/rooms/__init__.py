"""Rooms: a physical room simulator, real room series, and the room-state models.

    from models.rooms.simulator import simulate_buildings
    traces = simulate_buildings(4, seed=0, days=3)   # every room of 4 buildings over 3 days

See docs/rooms.md for the physics, the check against real series and the models.
"""
