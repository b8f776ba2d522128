include $(sort $(wildcard $(BR2_EXTERNAL_UROUTE_PATH)/package/*/*.mk))
