# café
print('hi')
