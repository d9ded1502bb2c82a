"""People and emergency services: Mesa households and tourists, SimPy dispatch, hazard to people.

Public: ``PeopleModel``, ``EmergencyServices``, ``PeopleParams``, ``ServicesParams``,
``hazard_rating``, ``hazard_class``.
"""
from .hazard import HAZARD_CLASSES, debris_factor, hazard_class, hazard_rating
from .params import CHANNELS, ChannelParams, PeopleParams, ServicesParams, UnitClass
from .people import STATES, Household, PeopleModel, TouristParty
from .services import EmergencyServices

__all__ = ["PeopleModel", "EmergencyServices", "PeopleParams", "ServicesParams", "ChannelParams",
           "UnitClass", "Household", "TouristParty", "hazard_rating", "hazard_class", "debris_factor",
           "HAZARD_CLASSES", "STATES", "CHANNELS"]
