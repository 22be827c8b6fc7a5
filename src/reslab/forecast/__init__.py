"""Weather forecasting with residual networks: WeatherBench's task on a simulated atmosphere or real files.

simulate (two-layer QG channel, netCDF), data (netCDF reader, samples), models (Rasp & Thuerey's ResNet,
its plain twin, the WeatherBench CNN), metrics (WeatherBench's scores), baselines, train, evaluate, plots,
experiment. xarray is imported only where files are read or written (`pip install reslab[forecast]`).
"""
